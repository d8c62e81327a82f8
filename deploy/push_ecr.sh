#!/usr/bin/env bash
# Pushes shopscribe's image to AWS ECR, tagged with the git revision and `latest`.
set -euo pipefail
# DOCKER: the docker client to run (default: `docker` on PATH), e.g. the daemon's own version.
docker() { command "${DOCKER:-docker}" "$@"; }

usage() {
  cat <<'USAGE'
Usage: deploy/push_ecr.sh [options]

Logs Docker in to ECR (aws ecr get-login-password), tags the local image as
REGISTRY/REPOSITORY:REVISION and REGISTRY/REPOSITORY:latest, and pushes both. REVISION is the
full git commit of the working tree (refused when the tree has uncommitted changes, unless
--allow-dirty: then REVISION-dirty, and `latest` is not moved). Prints the pushed image URI
with its digest on the last line, for `terraform apply -var image=…`.

Options:
  --image NAME          local image to push (default: shopscribe:local, as built by
                        deploy/build_and_run.sh)
  --repository NAME     ECR repository name (default: shopscribe; the Terraform module's
                        output `ecr_repository_url` names it)
  --region REGION       AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)
  --account ID          AWS account id (default: from `aws sts get-caller-identity`)
  --build               build the image first (deploy/build_and_run.sh --no-run)
  --allow-dirty         push a tree with uncommitted changes (tag REVISION-dirty only)
  --dry-run             print the commands instead of running them (no AWS call; needs --account)
  -h, --help            this help

Credentials: the usual AWS chain (environment, profile, SSO, or the OIDC role of
.github/workflows/ci.yml); nothing is stored by this script.
USAGE
}

image="shopscribe:local"
repository="shopscribe"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
account=""
build=false
dirty_ok=false
dry=false
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="${2:?--image needs a name}"; shift ;;
    --repository) repository="${2:?--repository needs a name}"; shift ;;
    --region) region="${2:?--region needs a region}"; shift ;;
    --account) account="${2:?--account needs an id}"; shift ;;
    --build) build=true ;;
    --allow-dirty) dirty_ok=true ;;
    --dry-run) dry=true ;;
    -h|--help) usage; exit 0 ;;
    *) echo "push_ecr: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
[ -n "$region" ] || { echo "push_ecr: no region: pass --region or set AWS_REGION" >&2; exit 2; }
if $dry && [ -z "$account" ]; then
  echo "push_ecr: --dry-run needs --account (it makes no AWS call)" >&2; exit 2
fi

# Runs a command, or prints it under --dry-run.
run() {
  if $dry; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}

revision="$(git rev-parse HEAD)"
move_latest=true
if [ -n "$(git status --porcelain)" ]; then
  if ! $dirty_ok; then
    echo "push_ecr: the working tree has uncommitted changes; commit them or pass --allow-dirty" >&2
    exit 1
  fi
  revision="${revision}-dirty"
  move_latest=false
fi

if $build; then
  run deploy/build_and_run.sh --no-run --tag "$image"
fi
command -v docker >/dev/null || { echo "push_ecr: docker is not installed" >&2; exit 1; }
if ! $dry; then
  command -v aws >/dev/null || { echo "push_ecr: the AWS CLI is not installed" >&2; exit 1; }
  docker image inspect "$image" >/dev/null 2>&1 || {
    echo "push_ecr: no local image $image (build it: deploy/build_and_run.sh, or pass --build)" >&2; exit 1; }
  [ -n "$account" ] || account="$(aws sts get-caller-identity --query Account --output text)"
fi

registry="${account}.dkr.ecr.${region}.amazonaws.com"
remote="${registry}/${repository}"

if $dry; then
  printf '+ aws ecr get-login-password --region %q | docker login --username AWS --password-stdin %q\n' "$region" "$registry"
else
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
fi
run docker tag "$image" "${remote}:${revision}"
run docker push "${remote}:${revision}"
if $move_latest; then
  run docker tag "$image" "${remote}:latest"
  run docker push "${remote}:latest"
fi
if $dry; then
  echo "${remote}:${revision}"
else
  digest="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${remote}:${revision}" | grep "^${remote}@" | head -1)"
  if $move_latest; then echo "push_ecr: pushed ${remote}:${revision} and :latest"; else echo "push_ecr: pushed ${remote}:${revision}"; fi
  echo "${digest:-${remote}:${revision}}"
fi
