# Transform jobs of this deployment (names starting with transform_job_name_prefix) report their
# end: Completed starts post-processing in the Lambda function; Failed and Stopped are published
# to the notification topic with the job name and the reason.
#
# Adaptive analysis jobs (analysis.tf) report theirs as AWS Batch events: the end of a job in the
# analysis queue (SUCCEEDED or FAILED; only the parent of an array job, not each child) goes to the
# Lambda function, which post-processes a SUCCEEDED one of the analysis job definition and logs a
# FAILED one; FAILED is also published to the notification topic with the reason.

locals {
  transform_completed_pattern = {
    source        = ["aws.sagemaker"]
    "detail-type" = ["SageMaker Transform Job State Change"]
    detail = {
      TransformJobName   = [{ prefix = var.transform_job_name_prefix }]
      TransformJobStatus = ["Completed"]
    }
  }
  transform_failed_pattern = {
    source        = ["aws.sagemaker"]
    "detail-type" = ["SageMaker Transform Job State Change"]
    detail = {
      TransformJobName   = [{ prefix = var.transform_job_name_prefix }]
      TransformJobStatus = ["Failed", "Stopped"]
    }
  }

  # Children of an array job carry detail.arrayProperties.index; the parent and a plain job do not
  # ("exists": false also matches when arrayProperties is absent). The Lambda checks it again.
  analysis_ended_pattern = {
    source        = ["aws.batch"]
    "detail-type" = ["Batch Job State Change"]
    detail = {
      status          = ["SUCCEEDED", "FAILED"]
      jobQueue        = [aws_batch_job_queue.analysis.arn]
      arrayProperties = { index = [{ exists = false }] }
    }
  }
  analysis_failed_pattern = {
    source        = ["aws.batch"]
    "detail-type" = ["Batch Job State Change"]
    detail = {
      status          = ["FAILED"]
      jobQueue        = [aws_batch_job_queue.analysis.arn]
      arrayProperties = { index = [{ exists = false }] }
    }
  }
}

resource "aws_cloudwatch_event_rule" "transform_completed" {
  name          = "${var.name}-transform-completed"
  description   = "face-blur transform job completed: post-process its results"
  event_pattern = jsonencode(local.transform_completed_pattern)
}

resource "aws_cloudwatch_event_target" "postprocess" {
  rule = aws_cloudwatch_event_rule.transform_completed.name
  arn  = aws_lambda_function.postprocess.arn

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 20
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letter.arn
  }
}

resource "aws_lambda_permission" "events" {
  statement_id   = "TransformCompletedEvents"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.postprocess.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.transform_completed.arn
  source_account = local.account_id
}

resource "aws_cloudwatch_event_rule" "transform_failed" {
  name          = "${var.name}-transform-failed"
  description   = "face-blur transform job failed or stopped: notify"
  event_pattern = jsonencode(local.transform_failed_pattern)
}

resource "aws_cloudwatch_event_target" "notify_failed" {
  rule = aws_cloudwatch_event_rule.transform_failed.name
  arn  = aws_sns_topic.notifications.arn

  input_transformer {
    input_paths = {
      job    = "$.detail.TransformJobName"
      status = "$.detail.TransformJobStatus"
      reason = "$.detail.FailureReason"
      region = "$.region"
    }
    input_template = "\"face-blur transform job <job> in <region> ended <status>: <reason>\""
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letter.arn
  }
}

resource "aws_cloudwatch_event_rule" "analysis_ended" {
  name          = "${var.name}-analysis-ended"
  description   = "face-blur analysis job ended: post-process its results (SUCCEEDED) or log why (FAILED)"
  event_pattern = jsonencode(local.analysis_ended_pattern)
}

resource "aws_cloudwatch_event_target" "analysis_postprocess" {
  rule = aws_cloudwatch_event_rule.analysis_ended.name
  arn  = aws_lambda_function.postprocess.arn

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 20
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letter.arn
  }
}

resource "aws_lambda_permission" "analysis_events" {
  statement_id   = "AnalysisEndedEvents"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.postprocess.function_name
  principal      = "events.amazonaws.com"
  source_arn     = aws_cloudwatch_event_rule.analysis_ended.arn
  source_account = local.account_id
}

resource "aws_cloudwatch_event_rule" "analysis_failed" {
  name          = "${var.name}-analysis-failed"
  description   = "face-blur analysis job failed: notify"
  event_pattern = jsonencode(local.analysis_failed_pattern)
}

resource "aws_cloudwatch_event_target" "notify_analysis_failed" {
  rule = aws_cloudwatch_event_rule.analysis_failed.name
  arn  = aws_sns_topic.notifications.arn

  input_transformer {
    input_paths = {
      job    = "$.detail.jobName"
      status = "$.detail.status"
      reason = "$.detail.statusReason"
      region = "$.region"
    }
    input_template = "\"face-blur analysis job <job> in <region> ended <status>: <reason>\""
  }

  dead_letter_config {
    arn = aws_sqs_queue.dead_letter.arn
  }
}
