from django.urls import path

from accounts import views

urlpatterns = [
    path("login/", views.PortalLoginView.as_view(), name="portal-login"),
    path("logout/", views.PortalLogoutView.as_view(), name="portal-logout"),
]
