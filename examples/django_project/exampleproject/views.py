"""Views of the example project: rules act on some, the decorator and the
per-request API on others."""

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

from connmw import request_close
from connmw.contrib.django import close_connection


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello\n", content_type="text/plain")


def download(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"contents of {name}\n", content_type="text/plain")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def search(request: HttpRequest) -> JsonResponse:
    q = request.GET.get("q", "")
    if not q:
        return JsonResponse({"error": "q is required"}, status=400)
    return JsonResponse({"q": q})


@close_connection(reason="export")
def export(request: HttpRequest) -> HttpResponse:
    return HttpResponse("a,b,c\n", content_type="text/csv")


@close_connection(reason="export")
async def async_export(request: HttpRequest) -> HttpResponse:
    return HttpResponse("a,b,c\n", content_type="text/csv")


def logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request_close(request, "logout")  # WSGI or ASGI: the same call
    return HttpResponse("bye\n", content_type="text/plain")
