# Outputs read by scripts/ (scripts/deployment.py OUTPUTS lists the ones it needs; a test checks
# that both sides agree) and by people building and pushing the images.

output "region" {
  description = "AWS region of the deployment."
  value       = var.region
}

output "bucket" {
  description = "Data bucket: frames, reference photos, results, plans, blurred frames, audio."
  value       = aws_s3_bucket.data.bucket
}

output "log_bucket" {
  description = "Bucket receiving the data bucket's access logs."
  value       = aws_s3_bucket.logs.bucket
}

output "s3_layout" {
  description = "Key templates in the data bucket for one job ({job} is the job id)."
  value       = local.s3_layout
}

output "kms_key_arn" {
  description = "Customer-managed key encrypting the buckets, images, logs and messages."
  value       = aws_kms_key.main.arn
}

output "inference_repository_url" {
  description = "ECR repository of the inference image (docker push <url>:<inference_image_tag>)."
  value       = aws_ecr_repository.inference.repository_url
}

output "postprocess_repository_url" {
  description = "ECR repository of the post-processing image (docker push <url>:<postprocess_image_tag>)."
  value       = aws_ecr_repository.postprocess.repository_url
}

output "inference_image_uri" {
  description = "Inference image the SageMaker model runs."
  value       = local.inference_image_uri
}

output "postprocess_image_uri" {
  description = "Post-processing image the Lambda function and the Batch jobs run."
  value       = local.postprocess_image_uri
}

output "sagemaker_model_name" {
  description = "SageMaker model that transform jobs run."
  value       = aws_sagemaker_model.inference.name
}

output "sagemaker_execution_role_arn" {
  description = "Role of the transform jobs (and of a model the start script creates itself)."
  value       = aws_iam_role.sagemaker.arn
}

output "inference_environment" {
  description = "Container environment of the SageMaker model."
  value       = local.inference_environment
}

output "transform_job_name_prefix" {
  description = "Prefix that transform job names must start with for post-processing to run."
  value       = var.transform_job_name_prefix
}

output "transform_instance_type" {
  description = "Default instance type of transform jobs."
  value       = var.transform_instance_type
}

output "transform_instance_count" {
  description = "Default instance count of transform jobs."
  value       = var.transform_instance_count
}

output "transform_max_concurrent_transforms" {
  description = "Default MaxConcurrentTransforms of transform jobs."
  value       = var.transform_max_concurrent_transforms
}

output "transform_max_payload_mb" {
  description = "Default MaxPayloadInMB of transform jobs."
  value       = var.transform_max_payload_mb
}

output "lambda_function_name" {
  description = "Post-processing Lambda function."
  value       = aws_lambda_function.postprocess.function_name
}

output "lambda_role_arn" {
  description = "Role of the post-processing Lambda function."
  value       = aws_iam_role.lambda.arn
}

output "batch_job_queue_arn" {
  description = "Batch job queue of post-processing jobs."
  value       = aws_batch_job_queue.postprocess.arn
}

output "batch_job_definition_arn" {
  description = "Batch job definition of post-processing jobs (without revision: the latest one)."
  value       = local.batch_job_definition_arn
}

output "batch_job_role_arn" {
  description = "Role of the post-processing Batch jobs."
  value       = aws_iam_role.batch_job.arn
}

output "batch_execution_role_arn" {
  description = "Role that starts the post-processing Batch containers."
  value       = aws_iam_role.batch_execution.arn
}

output "operator_policy_arn" {
  description = "IAM policy to attach to the people (or CI role) running scripts/."
  value       = aws_iam_policy.operator.arn
}

output "notification_topic_arn" {
  description = "SNS topic of failed or stopped transform jobs, failed analysis jobs and dead-letter alarms."
  value       = aws_sns_topic.notifications.arn
}

output "dead_letter_queue_url" {
  description = "Dead-letter queue of post-processing events that could not be handled."
  value       = aws_sqs_queue.dead_letter.url
}

output "analysis_job_queue" {
  description = "Batch job queue of the adaptive analysis jobs (start_job.py --analysis adaptive)."
  value       = aws_batch_job_queue.analysis.name
}

output "analysis_job_definition" {
  description = "Batch job definition of the adaptive analysis jobs (name: its latest revision)."
  value       = aws_batch_job_definition.analysis.name
}
