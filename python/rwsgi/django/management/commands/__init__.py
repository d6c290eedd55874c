"""``rwsgi_serve``: see ``rwsgi.django.management.commands.rwsgi_serve``."""
