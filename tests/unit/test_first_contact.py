"""What a new user meets first, produced for real on loopback: each network, TLS, proxy and AWS failure is
one line naming the host (or proxy, or connection) and what to do, with no traceback and no secret; a
private CA is trusted through its key; a forward proxy (Debian's tinyproxy) carries every request."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DMI = Path(sys.executable).with_name("dmi")
PROXY_USER = ("proxyuser", "proxy-secret-pass")
CLEAN = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "DOCKER_CONFIG": "/nonexistent",
         "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",  # never ask a metadata service off this machine
         **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # the code under test, not an install


def test_expired_aws_credentials_say_renew():
    # An expired session token cannot be produced here (moto does not expire them): the mapping of AWS's
    # own error answer is checked on botocore's real ClientError.
    from botocore.exceptions import ClientError

    from dmi_provider.targets.aws import client_error

    exc = ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "The security token included in the "
                                 "request is expired"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                      "GetAuthorizationToken")
    error = client_error("ECR (connection 'aws_default', region eu-west-1)", "log in to ECR", exc)
    assert str(error) == ("ECR (connection 'aws_default', region eu-west-1): cannot log in to ECR: the AWS credentials "
                          "expired (ExpiredTokenException: The security token included in the request is expired): "
                          "renew them (a new session token, or a role the connection assumes)")
    assert not error.retryable
