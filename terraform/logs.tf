# CloudWatch log groups, created here so that they have a retention and the deployment's key
# (a service creating them on first use would leave them unencrypted and kept forever).

resource "aws_cloudwatch_log_group" "lambda" {
  name              = local.lambda_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "batch" {
  name              = local.batch_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# SageMaker writes every transform job of the account and region to this one fixed name; set
# manage_sagemaker_log_group = false when it exists already (or import it).
resource "aws_cloudwatch_log_group" "sagemaker" {
  count             = var.manage_sagemaker_log_group ? 1 : 0
  name              = local.sagemaker_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}
