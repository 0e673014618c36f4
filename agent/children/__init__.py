"""Small programs the agent runs as child processes (test and demo commands)."""
