"""deploy/config/: the rules, routes and remote-write selection both forms use."""
