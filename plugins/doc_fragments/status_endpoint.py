# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options that say where an IVR service's port status comes from.

plugins/module_utils/status.py holds the matching argument spec; a unit test keeps the two equal.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the service's status API, for example C(http://127.0.0.1:18610).
      - The module adds C(/status), C(/permission), C(/drain) or C(/release) to it.
      - Exactly one of O(url) and O(command) is required.
    type: str
  command:
    description:
      - A site-provided program that prints the service's port state, as a list of arguments
        (no shell). Use it where the service has no HTTP status API.
      - It runs on the managed host with the environment variable E(PRAIRIEFYRE_IVR_SERVICE)
        set to O(service), and must exit 0.
      - "It prints either the same JSON object as C(GET /status) (at least C(ports_total) and
        C(ports), a list of C({\"port\": 1, \"busy\": true, \"call_seconds\": 12.5})), or one line
        per port in the form C(port=<n> state=busy|idle call_seconds=<s>); empty lines and lines
        starting with C(#) are skipped."
      - A command cannot close the service to new calls, so no lease exists; see the notes.
      - Exactly one of O(url) and O(command) is required.
    type: list
    elements: str
  token:
    description:
      - "Bearer token sent as C(Authorization: Bearer <token>) on every request."
      - Only with O(url).
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of an C(https) O(url).
      - Turn it off only in a lab with a self-signed certificate.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for one HTTP answer, from the request until its last byte. An answer
        larger than 1 MiB is refused.
      - Does not apply to O(command), which must end on its own.
    type: float
    default: 10
"""
