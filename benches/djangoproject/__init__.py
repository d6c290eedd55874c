"""A minimal Django project for benches/compare.py's Django scenarios.

Laid out like ``django-admin startproject`` makes one (``settings.py``,
``urls.py``, ``wsgi.py``), with the views beside them and their data in
``data.py``. No database: nothing the views run touches one.
"""
