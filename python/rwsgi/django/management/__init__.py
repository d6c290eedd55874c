"""Django management commands of rwsgi."""
