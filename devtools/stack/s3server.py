"""A real S3 API on loopback: the moto server (``moto_server``), one process."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devtools.stack import procs
from h2o_tasks.s3 import S3Settings

# Fixed, non-secret credentials of the local server (moto accepts any).
LOCAL_ACCESS_KEY = "h2o-airflow-local"
LOCAL_SECRET_KEY = "h2o-airflow-local-secret"


@dataclass
class S3Server:
    process: procs.ServerProcess
    settings: S3Settings

    def stop(self) -> None:
        self.process.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as resp:
            return resp.status < 500
    except Exception:
        return False


def start(workdir: Path, port: int = 0, host: str = "127.0.0.1", *, iam_auth: bool = False) -> S3Server:
    """Start ``moto_server`` on ``host`` (loopback, or an address of a test network namespace).

    ``iam_auth``: the server enforces IAM authentication and policies (moto's
    ``INITIAL_NO_AUTH_ACTION_COUNT``) after the few calls :func:`with_iam_identities` makes; use
    the settings it returns (the default ones are refused).
    """
    port = port or procs.free_port(host)
    url = f"http://{host}:{port}"
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(len(_IAM_SETUP))} if iam_auth else None
    proc = procs.start("moto_server", [exe, "-H", host, "-p", str(port)], Path(workdir) / "moto.log",
                       ready=lambda: _answers(url), timeout=60, env=env)
    return S3Server(proc, S3Settings(endpoint_url=url, access_key=LOCAL_ACCESS_KEY, secret_key=LOCAL_SECRET_KEY))


@dataclass(frozen=True)
class IamIdentities:
    """An IAM user with static keys (allowed to assume the role) and a role with S3 access."""

    user_settings: S3Settings  # the user's static keys
    role_arn: str

    def assume(self, session_name: str = "h2o-airflow-test") -> S3Settings:
        """Temporary credentials of the role (key, secret, session token, end), from the server's STS."""
        import boto3

        s = self.user_settings
        creds = boto3.client("sts", endpoint_url=s.endpoint_url, region_name=s.region, aws_access_key_id=s.access_key,
                             aws_secret_access_key=s.secret_key).assume_role(
            RoleArn=self.role_arn, RoleSessionName=session_name)["Credentials"]
        return S3Settings(endpoint_url=s.endpoint_url, access_key=creds["AccessKeyId"],
                          secret_key=creds["SecretAccessKey"], session_token=creds["SessionToken"],
                          region=s.region, expires_at=creds["Expiration"])


_IAM_SETUP = ("CreateUser", "CreateAccessKey", "PutUserPolicy", "CreateRole", "PutRolePolicy")
_ACCOUNT = "123456789012"  # moto's default account


def with_iam_identities(server: S3Server, user: str = "airflow", role: str = "h2o-pipeline") -> IamIdentities:
    """Make the user and the role on a server started with ``iam_auth`` (its last unauthenticated calls)."""
    import json

    import boto3

    url = server.settings.endpoint_url
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id=LOCAL_ACCESS_KEY,
                       aws_secret_access_key=LOCAL_SECRET_KEY)

    def allow(*actions: str) -> str:
        return json.dumps({"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})

    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    iam.put_user_policy(UserName=user, PolicyName="assume-and-s3", PolicyDocument=allow("sts:AssumeRole", "s3:*"))
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{_ACCOUNT}:user/{user}"}}]}
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="s3", PolicyDocument=allow("s3:*"))
    return IamIdentities(S3Settings(endpoint_url=url, access_key=key["AccessKeyId"],
                                    secret_key=key["SecretAccessKey"]), arn)
