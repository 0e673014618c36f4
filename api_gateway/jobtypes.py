"""``/jobtypes``: the job types this gateway loaded, with their settings schema."""
from __future__ import annotations

import falcon

from common import jobtypes
from common.config import Config
from common.errors import NotFound
from common.jobtypes.describe import jobtype_body


class JobTypeCollection:
    """``/jobtypes``: every loaded type (settings and steps, without argument templates)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        types = jobtypes.registry(self.config.job_types_dir)
        resp.media = {"jobtypes": [jobtype_body(types[name]) for name in sorted(types)]}


class JobTypeItem:
    """``/jobtypes/{name}``: one type in full, argument templates included."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        jobtype = jobtypes.registry(self.config.job_types_dir).get(name)
        if jobtype is None:
            raise NotFound("job type", name)
        resp.media = jobtype_body(jobtype, full=True)
