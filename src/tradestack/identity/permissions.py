"""Roles, permissions and API-key scopes. Least privilege: a permission not listed is refused."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a user is allowed to be."""

    ADMIN = "admin"
    TRADER = "trader"
    VIEWER = "viewer"
    RISK = "risk"


class Permission(StrEnum):
    """One thing an endpoint can require."""

    PROFILE = "profile"  # read own profile, log out
    SECURITY_MANAGE_OWN = "security:manage:own"  # MFA and API keys of oneself (interactive login only)
    ACCOUNTS_READ_OWN = "accounts:read:own"
    MARKET_DATA_READ = "marketdata:read"  # instruments, history, quotes, books, /ws market channels
    ACCOUNTS_READ_ALL = "accounts:read:all"
    TRADE_OWN = "trade:own"
    RISK_HALT = "risk:halt"
    RISK_LIMITS = "risk:limits"  # set any account's pre-trade limits
    AUDIT_READ = "audit:read"
    USERS_MANAGE = "users:manage"


class Scope(StrEnum):
    """What an API key may be granted."""

    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.TRADER: frozenset(
        {
            Permission.PROFILE,
            Permission.SECURITY_MANAGE_OWN,
            Permission.ACCOUNTS_READ_OWN,
            Permission.MARKET_DATA_READ,
            Permission.TRADE_OWN,
        }
    ),
    Role.VIEWER: frozenset(
        {Permission.PROFILE, Permission.SECURITY_MANAGE_OWN, Permission.ACCOUNTS_READ_OWN, Permission.MARKET_DATA_READ}
    ),
    Role.RISK: frozenset(
        {
            Permission.PROFILE,
            Permission.SECURITY_MANAGE_OWN,
            Permission.ACCOUNTS_READ_OWN,
            Permission.ACCOUNTS_READ_ALL,
            Permission.MARKET_DATA_READ,
            Permission.AUDIT_READ,
            Permission.RISK_HALT,
            Permission.RISK_LIMITS,
        }
    ),
}

# Managing keys and MFA is never delegated to a key: a stolen key cannot mint more keys.
SCOPE_PERMISSIONS: dict[Scope, frozenset[Permission]] = {
    Scope.READ: frozenset(
        {
            Permission.PROFILE,
            Permission.ACCOUNTS_READ_OWN,
            Permission.ACCOUNTS_READ_ALL,
            Permission.MARKET_DATA_READ,
            Permission.AUDIT_READ,
        }
    ),
    Scope.TRADE: frozenset({Permission.TRADE_OWN}),
    Scope.ADMIN: frozenset({Permission.USERS_MANAGE, Permission.RISK_HALT, Permission.RISK_LIMITS}),
}


def permissions_of(role: Role, scopes: frozenset[Scope] | None = None) -> frozenset[Permission]:
    """What a user of `role` may do; through an API key, only what both the role and the key's scopes allow."""
    granted = ROLE_PERMISSIONS[role]
    if scopes is None:
        return granted
    by_scopes: frozenset[Permission] = frozenset().union(*(SCOPE_PERMISSIONS[scope] for scope in scopes))
    return granted & by_scopes


def scopes_allowed(role: Role) -> frozenset[Scope]:
    """Scopes a user of `role` may put on a key: those that would grant at least one permission the role has."""
    return frozenset(scope for scope in Scope if SCOPE_PERMISSIONS[scope] & ROLE_PERMISSIONS[role])
