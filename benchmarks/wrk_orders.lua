-- wrk script: one new 3-line store order per request, as benchmarks.common.order_dict
-- builds them. Each connection posts distinct external ids, so every request is a new
-- order (none is an idempotent replay); buyers are drawn from 40,000 phone numbers, about
-- half of them registered members.
--   wrk -t2 -c8 -d30s --latency -s benchmarks/wrk_orders.lua http://127.0.0.1:8765 -- PREFIX PATH [GET]
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "W"
  path = args[2] or "/api/v1/orders"
  method = args[3] or "POST"
  math.randomseed(1000 + tid)
  counter = 0
  base = 1735689600 -- 2025-01-01T00:00:00Z
end

local line = '{"line_no":%d,"sku":"SKU%d","quantity":%d,"list_price":19900,"paid_amount":%d}'

function request()
  if method == "GET" then
    return wrk.format("GET", path)
  end
  counter = counter + 1
  local lines = {}
  for n = 1, 3 do
    lines[n] = string.format(line, n, math.random(0, 499), math.random(1, 3), math.random(5000, 39999))
  end
  local body = string.format(
    '{"channel":"pos","external_id":"%s%d-%d","ordered_at":"%s","store":"S%03d",'
      .. '"identities":[{"type":"phone","value":"139%08d"}],"lines":[%s]}',
    prefix, tid, counter,
    os.date("!%Y-%m-%dT%H:%M:%S+00:00", base + counter * 60 + tid),
    counter % 40, math.random(0, 39999), table.concat(lines, ","))
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
