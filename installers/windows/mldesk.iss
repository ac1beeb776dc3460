; Inno Setup 6 script: the Windows installer of mldesk, from the PyInstaller bundle.
;
;   bash packaging/build.sh --bundle        (on Windows: dist\mldesk\mldesk.exe + mldesk-gui.exe)
;   iscc /DAppVersion=0.1.0 installers\windows\mldesk.iss
;   -> dist\mldesk-0.1.0-windows-x64-setup.exe
;
; Per-user install by default (no administrator rights; %LOCALAPPDATA%\Programs\mldesk),
; or for all users when the installer is run elevated / chosen in the dialog.
; Start menu entry, optional desktop icon, optional "Open with mldesk" for .yaml
; files and "Open as mldesk lab" on folders, an uninstaller (Settings > Apps).
; See installers/windows/README.md. installers/check_scripts.py checks this file.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "mldesk"
#define AppExe "mldesk.exe"
#define AppGuiExe "mldesk-gui.exe"
#define Root "..\.."

[Setup]
; The AppId identifies the product for upgrades and uninstall: never change it.
AppId={{69D437CB-F1F2-47CE-88A5-DF9C5511407F}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=mldesk developers
AppPublisherURL=https://github.com/mldesk/mldesk
AppSupportURL=https://github.com/mldesk/mldesk/issues
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename={#AppName}-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\resources\icons\io.mldesk.MLDesk.ico
UninstallDisplayIcon={app}\{#AppGuiExe}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes
ChangesEnvironment=yes
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "openwith"; Description: "Offer mldesk in ""Open with"" for .yaml files and on folders"; GroupDescription: "Integration:"
Name: "addtopath"; Description: "Add the mldesk command to PATH (for terminals)"; GroupDescription: "Integration:"; Flags: unchecked

[Files]
; The whole one-folder bundle: mldesk.exe (console, the CLI), mldesk-gui.exe
; (windowed, for shortcuts) and _internal\.
Source: "{#Root}\dist\mldesk\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppGuiExe}"; Comment: "Run machine-learning experiments on your own hardware"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppGuiExe}"; Tasks: desktopicon

[Registry]
; HKA = HKCU for a per-user install, HKLM for an all-users install.
; "Open with" for .yaml (mldesk never becomes the default for every YAML file).
Root: HKA; Subkey: "Software\Classes\.yaml\OpenWithProgids"; ValueType: string; ValueName: "mldesk.lab"; ValueData: ""; Flags: uninsdeletevalue; Tasks: openwith
Root: HKA; Subkey: "Software\Classes\mldesk.lab"; ValueType: string; ValueName: ""; ValueData: "mldesk lab (ml.yaml)"; Flags: uninsdeletekey; Tasks: openwith
Root: HKA; Subkey: "Software\Classes\mldesk.lab\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppGuiExe},0"; Tasks: openwith
Root: HKA; Subkey: "Software\Classes\mldesk.lab\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppGuiExe}"" open ""%1"""; Tasks: openwith
; A lab is a folder: "Open as mldesk lab" in the folder context menu.
Root: HKA; Subkey: "Software\Classes\Directory\shell\mldesk"; ValueType: string; ValueName: ""; ValueData: "Open as mldesk lab"; Flags: uninsdeletekey; Tasks: openwith
Root: HKA; Subkey: "Software\Classes\Directory\shell\mldesk"; ValueType: string; ValueName: "Icon"; ValueData: "{app}\{#AppGuiExe},0"; Tasks: openwith
Root: HKA; Subkey: "Software\Classes\Directory\shell\mldesk\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppGuiExe}"" open ""%1"""; Tasks: openwith
; PATH for the console mldesk.exe (per-user PATH for per-user installs).
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Check: NeedsAddPath('{app}') and not IsAdminInstallMode; Tasks: addtopath
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Check: NeedsAddPath('{app}') and IsAdminInstallMode; Tasks: addtopath

[Run]
Filename: "{app}\{#AppGuiExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only what the installer put there; the user's data (%LOCALAPPDATA%\mldesk) stays.
Type: filesandordirs; Name: "{app}\_internal"

[Code]
{ PATH handling for the "addtopath" task: added on install (see [Registry]),
  removed again on uninstall. }
procedure PathKey(var RootKey: Integer; var SubKey: string);
begin
  if IsAdminInstallMode then begin
    RootKey := HKEY_LOCAL_MACHINE;
    SubKey := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';
  end else begin
    RootKey := HKEY_CURRENT_USER;
    SubKey := 'Environment';
  end;
end;

function NeedsAddPath(Dir: string): Boolean;
var
  RootKey: Integer;
  SubKey, Path: string;
begin
  Dir := ExpandConstant(Dir);
  PathKey(RootKey, SubKey);
  if not RegQueryStringValue(RootKey, SubKey, 'Path', Path) then begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;

procedure RemoveFromPath(Dir: string);
var
  RootKey, I: Integer;
  SubKey, Path, Rest, Part, NewPath: string;
begin
  PathKey(RootKey, SubKey);
  if not RegQueryStringValue(RootKey, SubKey, 'Path', Path) then
    exit;
  Rest := Path + ';';
  NewPath := '';
  while Length(Rest) > 0 do begin
    I := Pos(';', Rest);
    Part := Copy(Rest, 1, I - 1);
    Rest := Copy(Rest, I + 1, Length(Rest));
    if (Part <> '') and (CompareText(Part, Dir) <> 0) then begin
      if NewPath <> '' then
        NewPath := NewPath + ';';
      NewPath := NewPath + Part;
    end;
  end;
  if NewPath <> Path then
    RegWriteExpandStringValue(RootKey, SubKey, 'Path', NewPath);
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemoveFromPath(ExpandConstant('{app}'));
end;
