# The post-processing Lambda function: started by the transform_completed rule (or, for adaptive
# analysis, the analysis_ended rule), it reads the run options (results/<job>/face-blur-options.json),
# post-processes short videos itself and hands longer ones (more than lambda_max_frames frames) to
# AWS Batch. The analysis queue and definition only tell it which Batch events are its own.

resource "aws_lambda_function" "postprocess" {
  #checkov:skip=CKV_AWS_117:The function only calls AWS APIs (S3, Batch, SageMaker) with IAM authentication over TLS and reaches nothing inside a VPC; attaching it to one would add NAT or endpoint cost without reducing what it can reach.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages only; this function is a container image from an immutable-tag, scan-on-push ECR repository.
  function_name = local.lambda_function_name
  description   = "face-blur post-processing: sequences, blur decisions and blurred frames for a finished transform job"
  role          = aws_iam_role.lambda.arn
  package_type  = "Image"
  image_uri     = local.postprocess_image_uri
  architectures = ["x86_64"]

  image_config {
    command = ["postprocess.lambda_handler.handler"]
  }

  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_seconds
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  kms_key_arn                    = aws_kms_key.main.arn

  ephemeral_storage {
    size = var.lambda_ephemeral_storage_mb
  }

  environment {
    variables = {
      FACE_BLUR_BATCH_JOB_QUEUE         = aws_batch_job_queue.postprocess.arn
      FACE_BLUR_BATCH_JOB_DEFINITION    = local.batch_job_definition_arn
      FACE_BLUR_LAMBDA_MAX_FRAMES       = tostring(var.lambda_max_frames)
      FACE_BLUR_RENDER_ARRAY_SIZE       = tostring(var.batch_render_array_size)
      FACE_BLUR_ANALYSIS_JOB_QUEUE      = aws_batch_job_queue.analysis.arn
      FACE_BLUR_ANALYSIS_JOB_DEFINITION = local.analysis_job_definition_arn
    }
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dead_letter.arn
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda.name
  }

  depends_on = [aws_iam_role_policy.lambda, aws_ecr_repository_policy.postprocess]
}

# One automatic retry for an asynchronous (EventBridge) invocation that failed; then the event is
# parked in the dead-letter queue, which raises the alarm.
resource "aws_lambda_function_event_invoke_config" "postprocess" {
  function_name                = aws_lambda_function.postprocess.function_name
  maximum_retry_attempts       = 1
  maximum_event_age_in_seconds = 21600
}
