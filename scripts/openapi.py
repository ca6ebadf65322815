"""Write the app's OpenAPI document (what web/src/api/schema.d.ts is generated from) to a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tradestack.api.app import create_app
from tradestack.kit.config import Settings


def main() -> None:
    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]  # defaults only: the document does not depend on them
    Path(sys.argv[1]).write_text(json.dumps(app.openapi(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
