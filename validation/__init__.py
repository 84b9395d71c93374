"""Validation suite: every kernel of lambda_hat.sample against exact learning coefficients.

python -m validation --profile quick --out validation_out
python -m validation.report validation_out/results.json --out docs/validation
"""
