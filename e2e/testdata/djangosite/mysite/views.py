"""Views that exercise what Django takes from the WSGI server: the
environ (paths under SCRIPT_NAME, headers, the scheme), wsgi.input (forms
and multipart uploads), streamed responses and wsgi.file_wrapper."""
import hashlib
import os

from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt


def hello(request, name):
    return JsonResponse({
        "name": name,
        "path": request.path,
        "path_info": request.path_info,
        "script_name": request.META.get("SCRIPT_NAME"),
        "reverse": reverse("hello", args=["x y"]),
        "query": request.GET.getlist("q"),
        "host": request.get_host(),
        "secure": request.is_secure(),
        "absolute": request.build_absolute_uri(),
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "custom": request.headers.get("X-Custom"),
        "pid": os.getpid(),
    })


def form(request):
    """GET: a CSRF token (and its cookie); POST: the fields, once the
    CSRF middleware has let the request through."""
    if request.method == "GET":
        return JsonResponse({"token": get_token(request)})
    return JsonResponse({"fields": {k: request.POST.getlist(k) for k in request.POST}})


@csrf_exempt
def upload(request):
    files = {}
    for field, f in request.FILES.items():
        digest = hashlib.sha256()
        for chunk in f.chunks():
            digest.update(chunk)
        files[field] = {"name": f.name, "size": f.size, "sha256": digest.hexdigest(),
                        "on_disk": hasattr(f, "temporary_file_path")}
    return JsonResponse({"files": files, "fields": {k: request.POST.getlist(k) for k in request.POST}})


def stream(request):
    n = int(request.GET.get("n", "5"))
    return StreamingHttpResponse(("chunk %d\n" % i for i in range(n)), content_type="text/plain")


def file(request):
    return FileResponse(open(os.path.join(os.path.dirname(__file__), "views.py"), "rb"),
                        content_type="text/x-python")


def boom(request):
    raise RuntimeError("django view exploded: marker-django")
