"""The project's Celery tasks."""
import json
import time

import redis
from celery import shared_task
from django.conf import settings


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task
def add(x, y):
    """Adds two numbers, and tells the async server's listeners that it did."""
    result = x + y
    message = {"task": add.request.id, "result": result}
    _redis().publish(settings.EVENTS_CHANNEL, json.dumps(message))
    return result


@shared_task
def heartbeat():
    """Sent by celerybeat: records when beat last ran."""
    now = time.time()
    _redis().set("proj:beat", str(now))
    return now
