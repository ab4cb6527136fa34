from django.urls import path

from . import views

urlpatterns = [
    path("hello/<str:name>/", views.hello, name="hello"),
    path("form/", views.form, name="form"),
    path("upload/", views.upload, name="upload"),
    path("stream/", views.stream, name="stream"),
    path("file/", views.file, name="file"),
    path("boom/", views.boom, name="boom"),
]
