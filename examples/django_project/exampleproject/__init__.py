"""A minimal Django project whose connections connmw manages per route.

Run it under a real server, from ``examples/django_project``::

    pip install "connmw[django]" waitress uvicorn
    waitress-serve --port=8000 exampleproject.wsgi:application     # WSGI
    uvicorn exampleproject.asgi:application --port 8000            # ASGI
    python manage.py runserver                                     # development server

Then watch the ``Connection`` header (``X-Connmw`` says why)::

    curl -sv http://127.0.0.1:8000/downloads/report.csv   # Connection: close (rule)
    curl -sv http://127.0.0.1:8000/export                 # Connection: close (decorator)
    curl -sv http://127.0.0.1:8000/search                 # 400, connection kept (rule close=False)
"""
