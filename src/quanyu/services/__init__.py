"""Use cases. Each command runs in one transaction through :mod:`quanyu.services.uow`."""
