# One customer-managed key, rotated yearly, for everything that stores data of this deployment:
# the data and log buckets, ECR images, CloudWatch log groups, the SNS topic, the dead-letter
# queue and the Lambda environment. Services that write on their own (CloudWatch Logs, S3 access
# logging, EventBridge and CloudWatch alarms publishing to the encrypted topic and queue) get the
# least they need, each limited to this account.

locals {
  kms_key_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        # The default key policy: the account administers the key and IAM policies grant its use.
        Sid       = "AccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsThisAccountsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"
          }
        }
      },
      {
        Sid       = "S3AccessLoggingWritesToTheLogBucket"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
      {
        Sid       = "EventBridgeAndAlarmsPublishToEncryptedTopicAndQueue"
        Effect    = "Allow"
        Principal = { Service = ["events.amazonaws.com", "cloudwatch.amazonaws.com"] }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  }
}

resource "aws_kms_key" "main" {
  description             = "face-blur ${var.name}: frames, face results (biometric data), images, logs and messages"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  policy = jsonencode(local.kms_key_policy)
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}
