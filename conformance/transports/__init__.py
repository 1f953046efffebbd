"""Protocol clients. Each records what it sends and receives as evidence, redacted of secrets."""
