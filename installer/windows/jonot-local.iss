; Inno Setup 6 script for Jonot Local on Windows.
; Build (on Windows, after PyInstaller):
;   pyinstaller installer\windows\jonot-local.spec        -> dist\jonot-local\
;   download WinSW-x64.exe (v2.12.0) to installer\windows\WinSW-x64.exe
;   iscc installer\windows\jonot-local.iss               -> installer\windows\Output\
; The server runs as a Windows service (WinSW) from boot; the data stays in
; C:\ProgramData\Jonot Local, also after uninstalling.

#define AppName "Jonot Local"
#define AppVersion GetEnv("JONOT_VERSION") == "" ? "0.1.0" : GetEnv("JONOT_VERSION")
#define AppExe "jonot-local.exe"
#define ServiceExe "jonot-local-service.exe"
#define Port "8080"
#define DistDir "..\..\dist\jonot-local"

[Setup]
AppId={{6A1C3E52-7F0B-4C8E-9D2A-4B6F1E0C5A71}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Jonot Local
DefaultDirName={autopf}\Jonot Local
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=jonot-local-setup-{#AppVersion}
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\{#AppExe}
; The service is stopped before files are replaced on upgrade (see [Code]).
CloseApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"
Name: "finnish"; MessagesFile: "compiler:Languages\Finnish.isl"

[Files]
Source: "{#DistDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
Source: "WinSW-x64.exe"; DestDir: "{app}"; DestName: "{#ServiceExe}"; Flags: ignoreversion
Source: "jonot-local-service.xml"; DestDir: "{app}"; Flags: ignoreversion

[Dirs]
; Kept on uninstall: the database, secret key and backups.
Name: "{commonappdata}\Jonot Local"; Flags: uninsneveruninstall
Name: "{commonappdata}\Jonot Local\logs"; Flags: uninsneveruninstall

[Icons]
Name: "{group}\Jonot Local Desk"; Filename: "{app}\{#AppExe}"; Parameters: "desk"; WorkingDir: "{app}"; Comment: "Open the desk window (finds the server on the LAN)"
Name: "{group}\Jonot Local Display"; Filename: "http://localhost:{#Port}/display"; Comment: "Open the TV display page in the browser"
Name: "{group}\Jonot Local Admin"; Filename: "http://localhost:{#Port}/admin"
Name: "{group}\Uninstall Jonot Local"; Filename: "{uninstallexe}"

[Run]
; The data folder: Administrators and SYSTEM (the service's account) only, as it holds
; patients' names and password hashes.
Filename: "{sys}\icacls.exe"; Parameters: """{commonappdata}\Jonot Local"" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F"; Flags: runhidden waituntilterminated; StatusMsg: "Protecting the data folder..."
; Kiosks, TVs and desks on the office network: TCP {#Port}; desks find the server by mDNS (UDP 5353).
; Private and domain networks only, never public Wi-Fi.
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall delete rule name=""Jonot Local"""; Flags: runhidden waituntilterminated
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall add rule name=""Jonot Local"" dir=in action=allow protocol=TCP localport={#Port} profile=private,domain program=""{app}\{#AppExe}"""; Flags: runhidden waituntilterminated; StatusMsg: "Opening the firewall for the office network..."
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall delete rule name=""Jonot Local mDNS"""; Flags: runhidden waituntilterminated
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall add rule name=""Jonot Local mDNS"" dir=in action=allow protocol=UDP localport=5353 profile=private,domain program=""{app}\{#AppExe}"""; Flags: runhidden waituntilterminated
Filename: "{app}\{#ServiceExe}"; Parameters: "install"; Flags: runhidden waituntilterminated; StatusMsg: "Registering the Jonot Local service..."
Filename: "{app}\{#ServiceExe}"; Parameters: "start"; Flags: runhidden waituntilterminated; StatusMsg: "Starting the server..."
Filename: "http://localhost:{#Port}/api/v1/health"; Description: "Check that the server answers"; Flags: postinstall shellexec skipifsilent unchecked

[UninstallRun]
Filename: "{app}\{#ServiceExe}"; Parameters: "stop"; Flags: runhidden waituntilterminated; RunOnceId: "StopService"
Filename: "{app}\{#ServiceExe}"; Parameters: "uninstall"; Flags: runhidden waituntilterminated; RunOnceId: "RemoveService"
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall delete rule name=""Jonot Local"""; Flags: runhidden waituntilterminated; RunOnceId: "RemoveFirewall"
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall delete rule name=""Jonot Local mDNS"""; Flags: runhidden waituntilterminated; RunOnceId: "RemoveFirewallMdns"

[Code]
// On upgrade, stop and unregister the old service before its files are replaced.
procedure CurStepChanged(CurStep: TSetupStep);
var
  Code: Integer;
begin
  if (CurStep = ssInstall) and FileExists(ExpandConstant('{app}\{#ServiceExe}')) then
  begin
    Exec(ExpandConstant('{app}\{#ServiceExe}'), 'stop', '', SW_HIDE, ewWaitUntilTerminated, Code);
    Exec(ExpandConstant('{app}\{#ServiceExe}'), 'uninstall', '', SW_HIDE, ewWaitUntilTerminated, Code);
  end;
end;
