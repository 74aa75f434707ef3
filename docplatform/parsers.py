"""DRF's JSON parser, made safe against deeply nested bodies.

`json.loads` raises RecursionError (not ValueError) on a body like `[[[[…]]]]` a few thousand
levels deep; DRF's JSONParser only turns ValueError into a 400, so such a body was a 500.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
