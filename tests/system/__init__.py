"""
System tests: real ``twistd`` processes, command-line programs, ``sshd``,
Chromium and Jupyter, driven from this process.
"""
