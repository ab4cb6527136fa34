from django.http import JsonResponse


def index(request):
    """Says hello and shows what the WSGI server passed to Django."""
    return JsonResponse({
        "message": "Hello from Django under gorn!",
        "method": request.method,
        "path": request.path,
        "script_name": request.META.get("SCRIPT_NAME", ""),
        "server_software": request.META.get("SERVER_SOFTWARE", ""),
    })
