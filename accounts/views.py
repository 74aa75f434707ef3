"""Portal pages: login (with the failed-login lockout) and logout. The other pages are in
vision/portal/."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from accounts.lockout import (
    client_ip,
    lockout_message,
    login_failure_record,
    login_failures_reset,
    login_lock_remaining,
)


class PortalLoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        remaining = login_lock_remaining(username=request.POST.get("username", ""), ip=client_ip(request))
        if remaining:
            return self._locked(remaining)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        login_failures_reset(username=form.get_user().get_username(), ip=client_ip(self.request))
        return super().form_valid(form)

    def form_invalid(self, form) -> HttpResponse:
        locked_for = login_failure_record(
            username=self.request.POST.get("username", ""), ip=client_ip(self.request)
        )
        if locked_for:
            return self._locked(locked_for)
        return super().form_invalid(form)

    def _locked(self, seconds: int) -> HttpResponse:
        context = self.get_context_data(
            form=self.get_form_class()(self.request), lockout=lockout_message(seconds)
        )
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(seconds)
        return response


class PortalLogoutView(auth_views.LogoutView):
    """POST only (Django's LogoutView refuses GET), so a link cannot log anyone out."""
