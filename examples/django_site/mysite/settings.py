"""Settings of the example Django project: no database, no apps, one view.

Not for production as is: set DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS.
"""
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"

# No database: the example needs none.
DATABASES = {}

USE_TZ = True
TIME_ZONE = "UTC"
