from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.PortalHomeView.as_view(), name="portal-home"),
    path("login/", views.PortalLoginView.as_view(), name="portal-login"),
    path("logout/", views.PortalLogoutView.as_view(), name="portal-logout"),
]
