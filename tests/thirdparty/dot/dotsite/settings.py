"""Settings of the minimal Django project that serves django-oauth-toolkit for
tests/thirdparty_dot.rs. Everything lives in the data directory given to server.py
(DOT_DATA_DIR): the SQLite database and the password-reset mails."""

import os

DATA_DIR = os.environ["DOT_DATA_DIR"]
HERE = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "dot-e2e-django-secret-key-for-tests-only-6f1c0b9e2d7a"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "dotsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(HERE, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(DATA_DIR, "db.sqlite3"),
    }
}
# A fast hasher: the test logs in a dozen times and the CI machine is small. Users'
# passwords and (DOT hashes them too) client secrets are still stored hashed.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Browser login, logout and password reset: django.contrib.auth's own views.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/accounts/login/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.path.join(DATA_DIR, "mail")
DEFAULT_FROM_EMAIL = "accounts@dot.test"

# Client ids of the tenant whose access tokens live one second (the expired-token case).
SHORT_LIVED_CLIENTS = {"gamma-short"}


def access_token_expires_in(request):
    """oauthlib calls this per token request: 1 s for short-lived clients, else 10 h."""
    client = getattr(request, "client", None)
    return 1 if getattr(client, "client_id", None) in SHORT_LIVED_CLIENTS else 36000


OAUTH2_PROVIDER = {
    "SCOPES": {"read": "Read", "write": "Write", "admin": "Administer users"},
    "DEFAULT_SCOPES": ["read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_expires_in,
    # Every refresh hands out a new refresh token and revokes the old one; presenting a
    # revoked one again revokes its whole family (reuse detection).
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,  # S256 only
    "REQUEST_APPROVAL_PROMPT": "force",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
