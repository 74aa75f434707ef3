"""The portal: server-rendered pages (templates/portal/) with small vanilla JS (static/js/).

Views parse, call the services and selectors of accounts/ and vision/, and render. Pages that act
talk to the JSON APIs (/api, /v1) with the session cookie and the CSRF header, so every write goes
through the same service as the API's."""
