from django.urls import include, path
from django.views.generic import TemplateView
from rest_framework_simplejwt.views import TokenBlacklistView

from .views import DeactivateUserView

urlpatterns = [
    # dj-rest-auth: login, logout, user, password reset (+confirm), token refresh / verify
    path("auth/", include("dj_rest_auth.urls")),
    # dj-rest-auth + allauth: registration and e-mail verification
    path("auth/registration/", include("dj_rest_auth.registration.urls")),
    # simplejwt: revoke a refresh token
    path("api/token/blacklist/", TokenBlacklistView.as_view(), name="token_blacklist"),
    path("api/admin/users/<int:user_id>/deactivate/", DeactivateUserView.as_view()),
    # only reversed, for the link in the password-reset mail
    path(
        "password-reset/confirm/<uidb64>/<token>/",
        TemplateView.as_view(),
        name="password_reset_confirm",
    ),
]
