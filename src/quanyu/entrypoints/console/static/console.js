// Quanyu console: draws the dashboard's charts with ECharts (served from node_modules).
(function () {
  "use strict";

  function data(name) {
    var el = document.getElementById("chart-" + name);
    return el ? JSON.parse(el.textContent) : null;
  }

  var builders = {
    recruits: function (d, labels) {
      return {
        tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
        grid: { left: 40, right: 10, bottom: 30, top: 40, containLabel: true },
        xAxis: { type: "category", data: d.x }, yAxis: { type: "value" },
        series: d.series.map(function (s) { return { name: s.name, type: "bar", stack: "all", data: s.data }; })
      };
    },
    sales: function (d, labels) {
      return {
        tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
        grid: { left: 60, right: 40, bottom: 30, top: 40, containLabel: true },
        xAxis: { type: "category", data: d.x },
        yAxis: [{ type: "value" }, { type: "value", min: 0, max: 1, axisLabel: { formatter: function (v) { return Math.round(v * 100) + "%"; } } }],
        series: [
          { name: labels.sales, type: "bar", data: d.sales },
          { name: labels.share, type: "line", yAxisIndex: 1, data: d.share }
        ]
      };
    },
    basket: function (d, labels) {
      return {
        tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
        grid: { left: 50, right: 40, bottom: 30, top: 40, containLabel: true },
        xAxis: { type: "category", data: d.x },
        yAxis: [{ type: "value" }, { type: "value" }],
        series: [
          { name: labels.aov, type: "line", data: d.aov },
          { name: labels.upt, type: "line", yAxisIndex: 1, data: d.upt }
        ]
      };
    },
    repurchase: function (d, labels) {
      return {
        tooltip: { trigger: "axis" },
        grid: { left: 50, right: 10, bottom: 30, top: 20 },
        xAxis: { type: "category", data: d.x },
        yAxis: { type: "value", axisLabel: { formatter: function (v) { return Math.round(v * 100) + "%"; } } },
        series: [{ name: labels.rate, type: "line", areaStyle: {}, data: d.rate }]
      };
    },
    lifecycle: function (d, labels) {
      return {
        tooltip: { trigger: "item" }, legend: { type: "scroll", bottom: 0 },
        series: [{ type: "pie", radius: ["35%", "65%"], data: d.map(function (x) { return { name: labels[x.name] || x.name, value: x.value }; }) }]
      };
    }
  };

  function draw(root) {
    if (!window.echarts) { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var name = el.getAttribute("data-chart");
      var d = data(name);
      if (!d || !builders[name]) { return; }
      var labels = JSON.parse(el.getAttribute("data-labels") || "{}");
      var chart = window.echarts.init(el, null, { renderer: "svg" });
      chart.setOption(builders[name](d, labels));
      el.setAttribute("data-drawn", "true");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
})();
