"""Who is calling: Firebase users, API session tokens, admins, the master token, devices."""
