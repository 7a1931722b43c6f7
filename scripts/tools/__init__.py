"""User tools: quickstart.sh, SeFa editing, the check against an upstream checkout."""
