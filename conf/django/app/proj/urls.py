from django.urls import path

from . import views

urlpatterns = [
    path("health/", views.health),
    path("tasks/", views.submit),
    path("tasks/<str:task_id>/", views.result),
]
