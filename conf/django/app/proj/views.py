"""Views: queue a task, read its result, and a health URL for the probes."""
from celery.result import AsyncResult
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import tasks
from .celery import app


@require_GET
def health(request):
    return HttpResponse("ok\n", content_type="text/plain")


@csrf_exempt
@require_POST
def submit(request):
    """POST /tasks/ with x and y (form fields): queues add(x, y), answers its id."""
    try:
        x = int(request.POST["x"])
        y = int(request.POST["y"])
    except (KeyError, ValueError):
        return JsonResponse({"error": "x and y must be integers"}, status=400)
    queued = tasks.add.delay(x, y)
    return JsonResponse({"id": queued.id}, status=202)


@require_GET
def result(request, task_id):
    """GET /tasks/ID/: the task's state, and its result once it succeeded."""
    found = AsyncResult(task_id, app=app)
    body = {"id": task_id, "state": found.state}
    if found.successful():
        body["result"] = found.result
    return JsonResponse(body)
