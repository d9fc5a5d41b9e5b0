# Where failures go: the SNS topic (failed or stopped transform jobs, failed analysis jobs, the
# dead-letter alarm) and the dead-letter queue (events the Lambda function or EventBridge could not
# deliver or process).

resource "aws_sns_topic" "notifications" {
  name              = "${var.name}-notifications"
  kms_master_key_id = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "notifications" {
  statement {
    sid     = "EventBridgeReportsFailedJobs"
    actions = ["sns:Publish"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    resources = [aws_sns_topic.notifications.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.transform_failed.arn, aws_cloudwatch_event_rule.analysis_failed.arn]
    }
  }

  statement {
    sid     = "AlarmsReportDeadLetters"
    actions = ["sns:Publish"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    resources = [aws_sns_topic.notifications.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_metric_alarm.dead_letters.arn]
    }
  }
}

resource "aws_sns_topic_policy" "notifications" {
  arn    = aws_sns_topic.notifications.arn
  policy = data.aws_iam_policy_document.notifications.json
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.notification_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.notifications.arn
  protocol  = "email"
  endpoint  = var.notification_email
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-postprocess-dead-letter"
  kms_master_key_id         = aws_kms_key.main.arn
  message_retention_seconds = 1209600 # 14 days, the most SQS keeps
}

data "aws_iam_policy_document" "dead_letter" {
  statement {
    sid     = "EventBridgeParksUndeliverableEvents"
    actions = ["sqs:SendMessage"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    resources = [aws_sqs_queue.dead_letter.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values = [
        aws_cloudwatch_event_rule.transform_completed.arn, aws_cloudwatch_event_rule.transform_failed.arn,
        aws_cloudwatch_event_rule.analysis_ended.arn, aws_cloudwatch_event_rule.analysis_failed.arn,
      ]
    }
  }
}

resource "aws_sqs_queue_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  policy    = data.aws_iam_policy_document.dead_letter.json
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-postprocess-dead-letters"
  alarm_description   = "A post-processing event could not be handled: see the messages in ${aws_sqs_queue.dead_letter.name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
  ok_actions          = [aws_sns_topic.notifications.arn]
}
