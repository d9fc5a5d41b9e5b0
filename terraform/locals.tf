# Names and the S3 layout. Every IAM statement below is written against these prefixes.
#
# One data bucket, one folder per kind of data and below it one folder per job:
#   input/<job>/frames/<frame>         video frames (img0000001.png ...), uploaded by scripts/upload_video.py
#   input/<job>/refs/<person>/<photo>  reference photos, uploaded by scripts/upload_refs.py
#   results/<job>/frames/<frame>.out   transform output, one face-blur/frame/v1 JSON per frame;
#   results/<job>/refs/<person>/<photo>.out     holds face embeddings (biometric data): expired
#   results/<job>/face-blur-options.json        run options (face-blur/options/v1) for post-processing
#   output/<job>/...                   blurred frames, face-blur-plan.json, face-blur-complete.json
#   audio/<job>/...                    the video's audio, kept aside for reassembly
# One transform job reads input/<job>/ (frames and reference photos together) and writes
# results/<job>/, keeping the relative paths. Kinds come first so that a lifecycle rule (which
# takes a literal prefix, no wildcard) can expire all results at once.

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  data_bucket_name = "${var.name}-data-${local.account_id}-${var.region}"
  log_bucket_name  = "${var.name}-logs-${local.account_id}-${var.region}"

  prefix = {
    input   = "input/"
    results = "results/"
    output  = "output/"
    audio   = "audio/"
  }

  # Per-job key templates that the scripts fill in ({job} is the job id); an output of this module.
  s3_layout = {
    frames     = "${local.prefix.input}{job}/frames/"
    references = "${local.prefix.input}{job}/refs/"
    results    = "${local.prefix.results}{job}/"
    options    = "${local.prefix.results}{job}/face-blur-options.json"
    output     = "${local.prefix.output}{job}/"
    audio      = "${local.prefix.audio}{job}/"
  }

  inference_image_uri   = "${aws_ecr_repository.inference.repository_url}:${var.inference_image_tag}"
  postprocess_image_uri = "${aws_ecr_repository.postprocess.repository_url}:${var.postprocess_image_tag}"

  lambda_function_name = "${var.name}-postprocess"
  sagemaker_model_name = "${var.name}-inference"

  # Log group names (SageMaker's is fixed by the service).
  lambda_log_group_name    = "/aws/lambda/${local.lambda_function_name}"
  batch_log_group_name     = "/aws/batch/${var.name}-postprocess"
  analysis_log_group_name  = "/aws/batch/${var.name}-analysis"
  sagemaker_log_group_name = "/aws/sagemaker/TransformJobs"

  transform_job_arn_pattern = "arn:${local.partition}:sagemaker:${var.region}:${local.account_id}:transform-job/${var.transform_job_name_prefix}*"
}
