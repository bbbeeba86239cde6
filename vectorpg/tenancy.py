"""Deprecated: vectorpg 0.1's place for :mod:`vectorpg.ddl.tenancy` (its names are also ``vectorpg.X``).
Removed in vectorpg 0.3."""

import warnings

from vectorpg.ddl.tenancy import enable_tenant_isolation, set_tenant, tenant_session

__all__ = ["enable_tenant_isolation", "set_tenant", "tenant_session"]

warnings.warn("vectorpg.tenancy is vectorpg.ddl.tenancy now", DeprecationWarning, stacklevel=2)
