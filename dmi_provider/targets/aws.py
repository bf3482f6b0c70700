"""AWS failures as one line: which connection and region, what happened, what to do."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from botocore import exceptions as boto

from dmi_provider.errors import DmiError

XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
BAD_KEYS = {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
            "SignatureDoesNotMatch", "InvalidAccessKeyId", "AuthFailure", "IncompleteSignature"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
PERMISSIONS = ("ecr:GetAuthorizationToken, ecr:DescribeRepositories, ecr:CreateRepository, "
               "ecr:PutLifecyclePolicy and the push actions (ecr:InitiateLayerUpload, ecr:UploadLayerPart, "
               "ecr:CompleteLayerUpload, ecr:PutImage, ecr:BatchCheckLayerAvailability)")


@contextlib.contextmanager
def aws_errors(who: str, doing: str) -> Iterator[None]:
    """`who`: e.g. "ECR (connection 'aws_default', region us-east-1)"; `doing`: what was being done."""
    try:
        yield
    except DmiError:
        raise
    except boto.NoRegionError:
        raise DmiError(f"{who}: cannot {doing}: no AWS region: set AWS_DEFAULT_REGION, or region_name in the AWS "
                       "connection's extra") from None
    except (boto.NoCredentialsError, boto.PartialCredentialsError) as exc:
        raise DmiError(f"{who}: cannot {doing}: no AWS credentials ({exc}): give the AWS connection a key or a "
                       "role, or run where AWS_ACCESS_KEY_ID, ~/.aws or an instance or pod role provides them"
                       ) from None
    except boto.SSLError as exc:
        raise DmiError(f"{who}: cannot {doing}: TLS to the AWS endpoint failed ({exc}): a company proxy that "
                       "intercepts TLS needs its CA in AWS_CA_BUNDLE (or the connection's verify extra)") from None
    except (boto.ProxyConnectionError, boto.EndpointConnectionError, boto.ConnectTimeoutError,
            boto.ReadTimeoutError) as exc:
        raise DmiError(f"{who}: cannot {doing}: the ECR API is unreachable ({exc}); check the network route, "
                       "HTTPS_PROXY / NO_PROXY, or the connection's endpoint_url", retryable=True) from None
    except boto.ClientError as exc:
        raise client_error(who, doing, exc) from None


def client_error(who: str, doing: str, exc: boto.ClientError) -> DmiError:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code") or "?"), str(error.get("Message") or "")
    found = XML_CODE.search(message)  # an XML error body where JSON was expected (an STS-style answer)
    if found:
        code, message = found.group(1), (XML_MESSAGE.search(message) or found).group(1)
    said = f"{code}: {message}" if message else code
    if code in EXPIRED:
        return DmiError(f"{who}: cannot {doing}: the AWS credentials expired ({said}): renew them (a new session "
                        "token, or a role the connection assumes)")
    if code in BAD_KEYS:
        return DmiError(f"{who}: cannot {doing}: AWS does not accept the credentials ({said}): check the access "
                        "key and secret of the AWS connection (or the environment's)")
    if code in DENIED:
        return DmiError(f"{who}: cannot {doing}: denied ({said}): the identity needs {PERMISSIONS}")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    throttled = code in ("ThrottlingException", "Throttling", "TooManyRequestsException")
    return DmiError(f"{who}: cannot {doing}: {said}", retryable=throttled or int(status) >= 500)
