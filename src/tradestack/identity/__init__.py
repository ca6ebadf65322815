"""Identity and access: users, roles, trading accounts, tokens, API keys, MFA."""
