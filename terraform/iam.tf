# One role per actor, each limited to the S3 prefixes (locals.tf) and the resources it uses:
#   SageMaker execution role: read input/, write results/, pull the inference image, its logs.
#   Lambda role:              read input/ and results/, write output/, submit the Batch jobs, its logs,
#                             its dead-letter queue, X-Ray.
#   Batch job role:           the same data access as the Lambda function (the same code runs).
#   Batch execution role:     pull the postprocess image, write the Batch log group.
#   Operator policy:          for the people running scripts/ (attach it to them): upload input/ and
#                             audio/, write the run options, start and watch transform jobs and
#                             analysis jobs, read output/.
#   Analysis roles (job, execution, instance): in analysis.tf.
# Resource "*" appears only for actions that have no narrower resource (ecr:GetAuthorizationToken,
# xray:Put*, cloudwatch:PutMetricData, which is limited to its namespace by a condition,
# batch:DescribeJobs and batch:ListJobs).

locals {
  data_bucket_arn = aws_s3_bucket.data.arn
  s3_via_service  = "s3.${var.region}.amazonaws.com"
}

# ---------------------------------------------------------------- SageMaker execution role

data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name}-sagemaker-execution"
  description        = "face-blur transform jobs: read input/, write results/, pull the inference image"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_assume.json
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "FindTheBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = [local.data_bucket_arn]
  }

  statement {
    sid       = "ListInput"
    actions   = ["s3:ListBucket"]
    resources = [local.data_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix.input}*"]
    }
  }

  statement {
    sid       = "ReadFramesAndReferencePhotos"
    actions   = ["s3:GetObject"]
    resources = ["${local.data_bucket_arn}/${local.prefix.input}*"]
  }

  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.data_bucket_arn}/${local.prefix.results}*"]
  }

  statement {
    sid       = "UseTheKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via_service]
    }
  }

  # The instances' storage volume (frames and embeddings while the job runs) is encrypted with the
  # deployment's key (scripts/start_job.py passes VolumeKmsKeyId): SageMaker creates a grant on the
  # key for the volume, on this role's behalf.
  statement {
    sid       = "EncryptTheTransformVolume"
    actions   = ["kms:CreateGrant"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sagemaker.${var.region}.amazonaws.com", "ec2.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  statement {
    sid       = "PullTheInferenceImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.inference.arn]
  }

  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid     = "WriteTransformJobLogs"
    actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    resources = [
      "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.sagemaker_log_group_name}",
      "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${local.sagemaker_log_group_name}:*",
    ]
  }

  statement {
    sid       = "PublishTransformJobMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/TransformJobs"]
    }
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "transform-job"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

# ---------------------------------------------------------------- post-processing data access (Lambda and Batch)

data "aws_iam_policy_document" "postprocess_data" {
  statement {
    sid       = "ListJobData"
    actions   = ["s3:ListBucket"]
    resources = [local.data_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix.input}*", "${local.prefix.results}*", "${local.prefix.output}*"]
    }
  }

  statement {
    sid     = "ReadFramesResultsAndOutput"
    actions = ["s3:GetObject"]
    resources = [
      "${local.data_bucket_arn}/${local.prefix.input}*",
      "${local.data_bucket_arn}/${local.prefix.results}*",
      "${local.data_bucket_arn}/${local.prefix.output}*",
    ]
  }

  # Delete: a re-run with other options withdraws the old completion marker and progress records.
  statement {
    sid       = "WriteOutput"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"]
    resources = ["${local.data_bucket_arn}/${local.prefix.output}*"]
  }

  statement {
    sid       = "UseTheKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via_service]
    }
  }
}

# ---------------------------------------------------------------- Lambda role

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-postprocess-lambda"
  description        = "face-blur post-processing Lambda: read input/ and results/, write output/, submit Batch jobs"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda" {
  source_policy_documents = [data.aws_iam_policy_document.postprocess_data.json]

  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }

  statement {
    sid       = "DecryptEnvironmentAndUseTheDeadLetterQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["lambda.${var.region}.amazonaws.com", "sqs.${var.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "SendFailedEventsToTheDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  statement {
    sid       = "DescribeThisDeploymentsTransformJobs"
    actions   = ["sagemaker:DescribeTransformJob"]
    resources = [local.transform_job_arn_pattern]
  }

  statement {
    sid     = "SubmitPostprocessingJobs"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.postprocess.arn,
      local.batch_job_definition_arn,
      "${local.batch_job_definition_arn}:*",
    ]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "postprocess"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# ---------------------------------------------------------------- Batch roles

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "batch_job" {
  name               = "${var.name}-postprocess-batch-job"
  description        = "face-blur post-processing Batch jobs: read input/ and results/, write output/"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "batch_job" {
  name   = "postprocess"
  role   = aws_iam_role.batch_job.id
  policy = data.aws_iam_policy_document.postprocess_data.json
}

resource "aws_iam_role" "batch_execution" {
  name               = "${var.name}-postprocess-batch-execution"
  description        = "Starts face-blur post-processing containers: pull the postprocess image, write their logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "batch_execution" {
  statement {
    sid       = "PullThePostprocessImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.postprocess.arn]
  }

  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteJobLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.batch.arn}:*"]
  }
}

resource "aws_iam_role_policy" "batch_execution" {
  name   = "start-containers"
  role   = aws_iam_role.batch_execution.id
  policy = data.aws_iam_policy_document.batch_execution.json
}

# EC2 capacity only (batch_compute_type = ec2-spot): the ECS container agent on the instances.
# AmazonEC2ContainerServiceforEC2Role is AWS's own minimum for the agent (register the instance,
# poll for tasks); the jobs themselves use the job and execution roles above.
data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "batch_instance" {
  count              = local.batch_uses_ec2 ? 1 : 0
  name               = "${var.name}-postprocess-batch-instance"
  description        = "ECS container agent on face-blur Batch EC2 instances"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "batch_instance" {
  count      = local.batch_uses_ec2 ? 1 : 0
  role       = aws_iam_role.batch_instance[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "batch_instance" {
  count = local.batch_uses_ec2 ? 1 : 0
  name  = "${var.name}-postprocess-batch-instance"
  role  = aws_iam_role.batch_instance[0].name
}

# ---------------------------------------------------------------- operator policy (people running scripts/)

data "aws_iam_policy_document" "operator" {
  statement {
    sid       = "ListJobData"
    actions   = ["s3:ListBucket"]
    resources = [local.data_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix.input}*", "${local.prefix.output}*", "${local.prefix.audio}*"]
    }
  }

  statement {
    sid     = "UploadFramesReferencesAndAudio"
    actions = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [
      "${local.data_bucket_arn}/${local.prefix.input}*",
      "${local.data_bucket_arn}/${local.prefix.audio}*",
    ]
  }

  statement {
    sid       = "WriteRunOptions"
    actions   = ["s3:PutObject"]
    resources = ["${local.data_bucket_arn}/${local.prefix.results}*/face-blur-options.json"]
  }

  statement {
    sid     = "DownloadOutputAndAudio"
    actions = ["s3:GetObject"]
    resources = [
      "${local.data_bucket_arn}/${local.prefix.output}*",
      "${local.data_bucket_arn}/${local.prefix.audio}*",
    ]
  }

  statement {
    sid       = "UseTheKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via_service]
    }
  }

  statement {
    sid       = "RunTransformJobs"
    actions   = ["sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob", "sagemaker:AddTags"]
    resources = [local.transform_job_arn_pattern]
  }

  # Adaptive analysis (start_job.py --analysis adaptive): submit to the analysis queue with the
  # analysis definition only, tag the job on submission (face-blur:job only), watch it.
  statement {
    sid     = "SubmitAnalysisJobs"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.analysis.arn,
      local.analysis_job_definition_arn,
      "${local.analysis_job_definition_arn}:*",
    ]
  }

  statement {
    sid       = "TagAnalysisJobsOnSubmission"
    actions   = ["batch:TagResource"]
    resources = ["arn:${local.partition}:batch:${var.region}:${local.account_id}:job/*"]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = ["face-blur:job"]
    }
  }

  statement {
    sid       = "WatchAnalysisJobs"
    actions   = ["batch:DescribeJobs", "batch:ListJobs"]
    resources = ["*"]
  }

  statement {
    sid       = "FindTransformJobs"
    actions   = ["sagemaker:ListTransformJobs"]
    resources = ["*"]
  }

  statement {
    sid       = "UseOrCreateTheModel"
    actions   = ["sagemaker:DescribeModel", "sagemaker:CreateModel", "sagemaker:AddTags"]
    resources = ["arn:${local.partition}:sagemaker:${var.region}:${local.account_id}:model/${local.sagemaker_model_name}*"]
  }

  statement {
    sid       = "PassTheExecutionRoleToSageMaker"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${var.name}-operator"
  description = "Run face-blur jobs with scripts/: upload, start transform jobs, download results"
  policy      = data.aws_iam_policy_document.operator.json
}
