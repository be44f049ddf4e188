"""`hami-mig doctor`: a read-only preflight of a GPU node, one line per check with the fix for each problem."""

from hami_mig.doctor.readonly import ReadOnlyNvml, ReadOnlyViolation, is_read
from hami_mig.doctor.report import Check, Report
from hami_mig.doctor.run import DoctorOptions, run_doctor

__all__ = ["Check", "DoctorOptions", "ReadOnlyNvml", "ReadOnlyViolation", "Report", "is_read", "run_doctor"]
