#!/usr/bin/env python3
"""Call one ECR API operation on moto (the AWS API emulator) with boto3 and print the response.

    ecr_api.py ENDPOINT_URL OPERATION [PARAMETERS_JSON] [--region REGION]

OPERATION is boto3's method name, such as create_repository, describe_repositories or put_image.
PARAMETERS_JSON is a JSON object of the operation's parameters, as boto3 names them. The client
signs with the fixed access key `testing`, so it never needs real credentials, and it goes only to
ENDPOINT_URL. On success it prints the response as one JSON document, without ResponseMetadata and
with times in ISO 8601. An error from the API, or a failed connection, prints `CODE: MESSAGE` to
stderr and exits 1. Usage errors exit 2.

The caller should run it with AWS_EC2_METADATA_DISABLED=true and with AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE pointing at files that do not exist, so no setting of the machine's
own AWS configuration applies.
"""

import argparse
import datetime
import json
import sys

import boto3
import botocore.exceptions

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


def to_json(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Call one ECR API operation with boto3.")
    parser.add_argument("endpoint_url", help="the emulator's URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("operation", help="boto3 method name, e.g. describe_repositories")
    parser.add_argument("parameters", nargs="?", default="{}", help="JSON object of parameters")
    parser.add_argument("--region", default="us-east-1", help="AWS region (default us-east-1)")
    args = parser.parse_args(argv)

    try:
        parameters = json.loads(args.parameters)
    except json.JSONDecodeError as error:
        parser.error(f"PARAMETERS_JSON is invalid JSON: {error}")
    if not isinstance(parameters, dict):
        parser.error("PARAMETERS_JSON must be a JSON object")

    client = boto3.client(
        "ecr",
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    # Only API operations, not the client's other attributes (meta, close, get_paginator, ...).
    if args.operation not in client.meta.method_to_api_mapping:
        parser.error(f"unknown ECR operation {args.operation!r}")
    method = getattr(client, args.operation)

    try:
        response = method(**parameters)
    except botocore.exceptions.ClientError as error:
        details = error.response.get("Error", {})
        print(f"{details.get('Code', 'Error')}: {details.get('Message', error)}", file=sys.stderr)
        return 1
    except botocore.exceptions.BotoCoreError as error:
        # Invalid parameters, or no connection to ENDPOINT_URL.
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    response.pop("ResponseMetadata", None)
    json.dump(response, sys.stdout, default=to_json)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
