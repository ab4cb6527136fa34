"""The WSGI entry point of the example project:

    gorn --chdir examples/django_site mysite.wsgi

(gorn looks for the attribute "application" when APP names no attribute.)
"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
