"""Settings of `proj`, a small Django project run by guardian (conf/django).

Everything that differs between hosts comes from the environment, which the job files
set in `env`.
"""
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Set DJANGO_SECRET_KEY in the jobs' environment on a real host.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "proj-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["www.example.com", "127.0.0.1", "localhost"]

INSTALLED_APPS = ["proj"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "proj.urls"
WSGI_APPLICATION = "proj.wsgi.application"
# No models: the project keeps its state in Redis.
DATABASES = {}
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "static")

# Redis is the Celery broker, the result backend and the channel to the async server.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
EVENTS_CHANNEL = "proj:events"

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
# The worker's events feed Flower.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# celerybeat: a heartbeat, so that `proj:beat` in Redis tells when beat last ran.
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "proj.tasks.heartbeat", "schedule": 30.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
