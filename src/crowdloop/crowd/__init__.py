"""The crowd platform's services: users and tokens, projects, items, assignment, answers,
quality rules, pay, aggregation, export and webhooks. Each takes a SQLAlchemy session and
never commits: the HTTP request or the CLI command is the unit of work."""
