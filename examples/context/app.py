"""context: shows what a function sees — the context object and Lambda's environment."""

import os


def handler(event, context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_time_in_millis": context.get_remaining_time_in_millis(),
        "client_context": context.client_context and context.client_context.custom,
        "environment": {
            key: os.environ.get(key)
            for key in ("AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT",
                        "AWS_ENDPOINT_URL", "_HANDLER", "GREETING")
        },
    }
