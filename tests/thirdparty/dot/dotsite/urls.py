from django.urls import include, path

from . import views

urlpatterns = [
    # DOT: /o/authorize/, /o/token/, /o/revoke_token/, /o/introspect/, ...
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # django.contrib.auth: /accounts/login/, /accounts/logout/, /accounts/password_reset/,
    # /accounts/reset/<uidb64>/<token>/, ...
    path("accounts/", include("django.contrib.auth.urls")),
    # A tenant's resources, behind DOT access tokens.
    path("api/<str:app>/me", views.me),
    path("api/<str:app>/users/<str:username>/deactivate", views.deactivate),
]
