"""People who sign in: profiles created on first sight, roles, admin management."""
