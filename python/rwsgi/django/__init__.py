"""rwsgi for Django: add ``"rwsgi.django"`` to INSTALLED_APPS, then run
``python manage.py rwsgi_serve [addrport]`` instead of ``runserver``.

This package imports nothing from Django at import time: the rwsgi master
started by the command imports it (``rwsgi.django._serve``) and must stay
free of the project's code so each reload imports it fresh.
"""
